"""HTTP pieces both Keel servers share: request-head limits in the protocol, whole bodies first, JSON answers."""
