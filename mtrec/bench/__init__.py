"""`mtrec bench ...`: measured speed, printed as Markdown with the command, date and machine."""
