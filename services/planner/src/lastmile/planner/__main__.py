"""`python -m lastmile.planner`: the service on its own (distributed mode)."""

from lastmile.common.serve import serve
from lastmile.planner.app import create_app
from lastmile.planner.settings import PlannerSettings


def main() -> None:
    serve(PlannerSettings, create_app)


if __name__ == "__main__":
    main()
