"""PD-FGC progressive training (`pdfgc train`): stages, losses, augmentation, batches and the trainer."""
