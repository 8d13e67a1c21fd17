"""A run's mathematics: the training loop (:mod:`.loop`), one outer step's pieces — batches, selection, the
inner phase (:mod:`.step_phases`) —, the step itself, written once over its phases (:mod:`.outer_step`), and the same
step compiled whole (:mod:`.compiled_step`), the reverse-mode hypergradient chain (:mod:`.hypergradient`), the
implicit-function rule (:mod:`.implicit`), ``solve(matvec, b)`` linear solvers (:mod:`.linear_solvers`), the levels'
chain and a level's optimizer step (:mod:`.levels`), optimizers as pure functions (:mod:`.optim`), pytree helpers
(:mod:`.trees`) and the one module of tree comparisons (:mod:`.compare`).

May import: ``contract``, ``measure`` (timers, the floor), ``plugins`` (the registry, to find the exact reference),
``run`` (the plan it executes, progress). Never ``cli``, ``certify`` or ``report``: the engine runs without a
command line and knows nothing of how its numbers are certified or shown.
"""
