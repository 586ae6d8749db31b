"""socle's operator tooling: commands run on the operator's machine."""
