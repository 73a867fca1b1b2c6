"""Monitoring statistics: drift against a training baseline and label-free performance estimates."""
