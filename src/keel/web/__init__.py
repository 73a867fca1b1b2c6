"""HTTP pieces both Keel servers share.

Request-head limits in the protocol, whole bodies first, JSON answers.
"""
