"""Per-hour sums of the per-minute SLO counts, kept by triggers.

slo_slohour(slo_id, hour) holds the sums of good and total over the minutes
of slo_slominute in that UTC hour, so a 30-day status sums 720 hours instead
of 43,200 minutes. Triggers on slo_slominute keep it exact whoever writes the
minutes (the rollup hook, a backfill, COPY in a benchmark): each statement
adds its new rows and subtracts its old ones. Deltas commute, so concurrent
writers to one hour serialise on its row and never lose an update. There is
no foreign key, so TRUNCATE of the SLO tables needs no special order; a
TRUNCATE of the minutes empties the hours, and deleted SLOs' hours go with
their minutes.
"""

from django.db import migrations

CREATE = """
CREATE TABLE slo_slohour (
    slo_id bigint NOT NULL,
    hour timestamptz NOT NULL,
    good bigint NOT NULL,
    total bigint NOT NULL,
    PRIMARY KEY (slo_id, hour) INCLUDE (good, total)
);

CREATE FUNCTION slo_slohour_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO slo_slohour AS h (slo_id, hour, good, total)
    SELECT slo_id, date_trunc('hour', minute, 'UTC'), sum(good), sum(total)
    FROM new_rows GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (slo_id, hour) DO UPDATE
        SET good = h.good + EXCLUDED.good, total = h.total + EXCLUDED.total;
    RETURN NULL;
END $$;

CREATE FUNCTION slo_slohour_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO slo_slohour AS h (slo_id, hour, good, total)
    SELECT slo_id, date_trunc('hour', minute, 'UTC'), -sum(good), -sum(total)
    FROM old_rows GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (slo_id, hour) DO UPDATE
        SET good = h.good + EXCLUDED.good, total = h.total + EXCLUDED.total;
    -- Hours whose minutes are all gone would stay as zero rows; drop just those.
    DELETE FROM slo_slohour AS h
    USING (SELECT DISTINCT slo_id, date_trunc('hour', minute, 'UTC') AS hour FROM old_rows) AS t
    WHERE h.slo_id = t.slo_id AND h.hour = t.hour AND h.total = 0 AND h.good = 0;
    RETURN NULL;
END $$;

CREATE FUNCTION slo_slohour_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO slo_slohour AS h (slo_id, hour, good, total)
    SELECT slo_id, hour, sum(good), sum(total) FROM (
        SELECT slo_id, date_trunc('hour', minute, 'UTC') AS hour, good, total FROM new_rows
        UNION ALL
        SELECT slo_id, date_trunc('hour', minute, 'UTC'), -good, -total FROM old_rows
    ) AS changed
    GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (slo_id, hour) DO UPDATE
        SET good = h.good + EXCLUDED.good, total = h.total + EXCLUDED.total;
    DELETE FROM slo_slohour AS h
    USING (SELECT DISTINCT slo_id, date_trunc('hour', minute, 'UTC') AS hour FROM old_rows) AS t
    WHERE h.slo_id = t.slo_id AND h.hour = t.hour AND h.total = 0 AND h.good = 0;
    RETURN NULL;
END $$;

CREATE FUNCTION slo_slohour_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM slo_slohour;
    RETURN NULL;
END $$;

CREATE TRIGGER slo_slominute_inserted AFTER INSERT ON slo_slominute
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION slo_slohour_inserted();
CREATE TRIGGER slo_slominute_deleted AFTER DELETE ON slo_slominute
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION slo_slohour_deleted();
CREATE TRIGGER slo_slominute_updated AFTER UPDATE ON slo_slominute
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION slo_slohour_updated();
CREATE TRIGGER slo_slominute_truncated AFTER TRUNCATE ON slo_slominute
    FOR EACH STATEMENT EXECUTE FUNCTION slo_slohour_truncated();

INSERT INTO slo_slohour (slo_id, hour, good, total)
SELECT slo_id, date_trunc('hour', minute, 'UTC'), sum(good), sum(total)
FROM slo_slominute GROUP BY 1, 2;
"""

DROP = """
DROP TRIGGER slo_slominute_inserted ON slo_slominute;
DROP TRIGGER slo_slominute_deleted ON slo_slominute;
DROP TRIGGER slo_slominute_updated ON slo_slominute;
DROP TRIGGER slo_slominute_truncated ON slo_slominute;
DROP FUNCTION slo_slohour_inserted();
DROP FUNCTION slo_slohour_deleted();
DROP FUNCTION slo_slohour_updated();
DROP FUNCTION slo_slohour_truncated();
DROP TABLE slo_slohour;
"""


class Migration(migrations.Migration):
    dependencies = [("slo", "0003_webhooks_leave_slo")]

    operations = [migrations.RunSQL(CREATE, DROP)]
