"""The fixtures of every tier, as plugins from the support package (tests/support/).

They are all lazy: a unit test asks for none of them and so starts no database, server or process
(tests/unit/conftest.py makes asking for one an error). An integration module starts only what its
tests ask for: `database_url` a database, `api` uvicorn alone, `sim` the Mercado Pago simulator,
`smtp`/`hook` the receivers, `start_worker` workers, `kiosk` the simulator and both receivers,
`target` a local server for scheduled requests. `registry` registers the test and probe tasks
(tests/support/probe_tasks.py) in this process, so that `kiosk.queue.defer` accepts their names.
"""

pytest_plugins = (
    "tests.support.database",
    "tests.support.stack",
    "tests.support.hostile",
    "tests.support.schedules",
    "tests.support.registry",
)
