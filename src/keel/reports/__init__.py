"""Model cards and other human-readable reports: self-contained HTML, plots embedded, plus JSON."""
