"""Planner: fleet and depots; plans and re-plans routes with VROOM."""
