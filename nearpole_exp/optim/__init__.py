"""How a model's objective is minimised: the optimizer (a stochastic one stepping on each batch,
or full-batch L-BFGS), the learning-rate schedule, and the polish that takes the fit to the
objective's optimum after the stochastic steps (an exact solve or L-BFGS)."""
