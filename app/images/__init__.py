"""What images, indexes, attestations and BuildKit caches are: the knowledge behind ``kura inspect``,
``kura demo`` and the UI. Built on storage's public surface and on the registry API, never on files."""
