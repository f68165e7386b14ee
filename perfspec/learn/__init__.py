"""The learning layer: action sequences -> datasets -> model families -> evaluation -> MLflow.

Why a package of its own: the shared kernel (settings, errors, fileio, runtime) stays at the top of
``perfspec``; everything that knows about windows, models and scores lives here.
"""
