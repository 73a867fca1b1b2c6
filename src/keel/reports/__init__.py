"""Model cards and other human-readable reports: self-contained HTML with embedded plots, plus JSON."""
