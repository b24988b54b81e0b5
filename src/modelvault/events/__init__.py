"""Durable events: the audit log as a stream (a cursor, long-polled) and as webhooks
delivered at least once from the database, signed with HMAC-SHA256."""
