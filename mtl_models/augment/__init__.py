"""Label-safe augmentation: what each transform does to an image (effects), what each task's
label survives (sensitivities), and the resolved albumentations policy."""
