-- One database per service: services never read each other's tables.
CREATE DATABASE order_intake;
CREATE DATABASE planner;
CREATE DATABASE tracker;
CREATE DATABASE notifier;
