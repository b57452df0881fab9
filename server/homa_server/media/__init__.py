"""Local media processing (no provider calls): `images` decodes, converts, resizes and optimises
images (Pillow), `sources` loads image inputs (URLs through the SSRF guard); `pdf` and `ocr` extract
document text."""
