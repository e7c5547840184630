"""``python -m broker ...`` runs the ``ailurus`` command line."""

from broker.cli import main

if __name__ == "__main__":
    main()
