"""The governance service: users, roles, authentication, policy and the lifecycle API."""
