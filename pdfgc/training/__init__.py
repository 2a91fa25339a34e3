"""Training entry (`pdfgc train`): finds the family by its configuration name and runs its trainer."""
