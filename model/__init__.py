"""Exercise 2: the predictive Vision Transformer, its data, training loop and command lines."""
