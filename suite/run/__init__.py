"""One run, from command-line overrides to a committed record: composition and the override check
(:mod:`.compose`), the validated plan (:mod:`.plan`) and budgets (:mod:`.budgets`), the job — resume, lock, isolation
(:mod:`.job`, :mod:`.isolate`), stopping at a step boundary on SIGINT / SIGTERM (:mod:`.interrupt`) — the execution
that builds the task and backend and trains (:mod:`.execute`), records (:mod:`.records`), a sweep's ledger
(:mod:`.ledger`), progress (:mod:`.progress`) and the printed summary (:mod:`.summary`).

May import: ``contract``, ``engine``, ``measure``, ``plugins``, ``conf``. Never ``cli``, ``certify`` or ``report``.
"""
