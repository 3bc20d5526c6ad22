#!/usr/bin/env python
"""Django's command-line utility for administrative tasks.

On the embedded default (no DATABASE_URL) it finds the running embedded
PostgreSQL of MONOENV_DATA_DIR, or starts it: settings only say where it is.
"""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "monoenv_site.settings")
    from django.core.management import execute_from_command_line

    from monoenv_site import embedded

    embedded.prepare()
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
