"""Where metrics go: W&B (offline unless logged in), CSV or nowhere; each job's W&B run named and tagged."""
