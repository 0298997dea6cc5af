"""schedules: six-field crons move their seconds last, the product's one cron dialect

Schedules were written seconds first (`*/30 * * * * *`, node-cron's order); the settings' periodic
crons go to procrastinate, which reads them seconds last (`* * * * * */30`). The product now has
one dialect, procrastinate's (kiosk/cron.py). Every stored six-field schedule cron is rewritten with
its first field moved last, which keeps its ticks; five-field crons and `@` aliases are unchanged.
`dispatched_until` and the runs already created stay: they are the same ticks. Downgrade moves the
seconds back first.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-02
"""

from kiosk.migrations import run_sql

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

# Crons are stored normalised (one space between fields: kiosk/cron.py), so a split on ' ' is the
# fields.
SIX_FIELDS = "cron NOT LIKE '@%' AND cardinality(string_to_array(cron, ' ')) = 6"


def upgrade() -> None:
    run_sql(
        f"""
        UPDATE schedules
        SET cron = array_to_string(
            (string_to_array(cron, ' '))[2:6] || (string_to_array(cron, ' '))[1:1], ' ')
        WHERE {SIX_FIELDS};
        """
    )


def downgrade() -> None:
    run_sql(
        f"""
        UPDATE schedules
        SET cron = array_to_string(
            (string_to_array(cron, ' '))[6:6] || (string_to_array(cron, ' '))[1:5], ' ')
        WHERE {SIX_FIELDS};
        """
    )
