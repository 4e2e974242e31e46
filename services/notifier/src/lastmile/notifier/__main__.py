"""`python -m lastmile.notifier`: the service on its own (distributed mode)."""

from lastmile.common.serve import serve
from lastmile.notifier.app import create_app
from lastmile.notifier.settings import NotifierSettings


def main() -> None:
    serve(NotifierSettings, create_app)


if __name__ == "__main__":
    main()
