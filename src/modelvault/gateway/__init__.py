"""The gateway: the data plane that loads releases, routes each request, mirrors shadows,
measures arms and follows the control plane (``modelvault gateway``)."""
