"""Build-time tools (documentation and dashboard generators): not part of the installed package."""
