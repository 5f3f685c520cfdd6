"""Parity constraints: exact projection, fairness layer, online primal-dual predictor."""
