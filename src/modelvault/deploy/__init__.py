"""The deployment manager's vocabulary: releases, deployment specs and their validation,
the routing math, and guardrail rules. The use-cases live in ``service.deployments`` and
``service.rollouts``; the data plane in ``modelvault.gateway``."""
