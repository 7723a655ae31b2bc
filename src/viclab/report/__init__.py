"""The study report: interpretations computed from results.json, and the self-contained HTML page."""
