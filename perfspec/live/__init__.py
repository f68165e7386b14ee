"""The proactive predictor on a stream of actions: per-stream windows, the next actions predicted as
each action arrives, and each prediction scored when the action it predicted for arrives (``engine``);
``replay`` runs a cleaned log through it at its recorded timing or as fast as possible."""
