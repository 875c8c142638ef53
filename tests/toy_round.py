"""The LLOME round settings the loop tests share: a few seconds a round with the tiny copy model."""

TOY_ROUND = {
    "generation": {"num_seeds": 6, "num_iterations": 2, "greedy": True, "temperatures": [0.8, 1.2],
                   "num_samples": 3, "batch_size": 64, "temperature_schedule": True},
    "selection": {"likelihood_quantile": 0.6, "num_to_label": 12},
    "pairs": {"max_distance": 0.5, "num_neighbors": 10, "infeasible_fraction": 0.1, "max_pairs": 64},
    "train": {"learning_rate": 1e-3, "num_train_epochs": 1, "per_device_train_batch_size": 8,
              "disable_tqdm": True, "logging_steps": 1000, "save_steps": 100000},
}
