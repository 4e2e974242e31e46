"""`python -m lastmile.tracker`: the service on its own (distributed mode)."""

from lastmile.common.serve import serve
from lastmile.tracker.app import create_app
from lastmile.tracker.settings import TrackerSettings


def main() -> None:
    serve(TrackerSettings, create_app)


if __name__ == "__main__":
    main()
