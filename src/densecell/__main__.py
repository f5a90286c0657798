"""``python -m densecell`` is the ``densecell`` command."""

from .cli import main

main()
