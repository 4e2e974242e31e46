"""`python -m lastmile.order_intake`: the service on its own (distributed mode)."""

from lastmile.common.serve import serve
from lastmile.order_intake.app import create_app
from lastmile.order_intake.settings import IntakeSettings


def main() -> None:
    serve(IntakeSettings, create_app)


if __name__ == "__main__":
    main()
