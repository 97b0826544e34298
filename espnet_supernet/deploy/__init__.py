"""After training: prepare a trained supernet for deployment and decide what to deploy.

Per-size BatchNorm statistics (``batch_norm_recalibration``), per-layer sparsities for a
parameter budget (``sparsity_search``), what each size costs (``subnet_report``), the
size that fits a deployment budget (``budget_selection``), and the table and plot of the
exported sizes (``deployment_report``, ``pareto_plot``). The command lines are the
``espnet_supernet.bin`` modules of the same names.
"""
