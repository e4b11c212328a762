-- Monthly partitions from p_from's month through p_until's (UTC), for both tables; returns
-- how many it created. Replicas may run it at once: the advisory lock queues them. A month
-- the default partition already holds rows of is left to the default (with a warning).
CREATE OR REPLACE FUNCTION loyalty_ensure_partitions(p_from timestamptz, p_until timestamptz)
RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    v_month date := date_trunc('month', p_from AT TIME ZONE 'UTC')::date;
    v_last  date := date_trunc('month', p_until AT TIME ZONE 'UTC')::date;
    v_table text;
    v_name  text;
    v_made  int := 0;
BEGIN
    WHILE v_month <= v_last LOOP
        FOREACH v_table IN ARRAY ARRAY['purchases', 'rejections'] LOOP
            v_name := v_table || '_' || to_char(v_month, 'YYYY_MM');
            IF to_regclass(v_name) IS NULL THEN
                PERFORM pg_advisory_xact_lock(hashtextextended('loyalty_partitions', 15));
                IF to_regclass(v_name) IS NULL THEN
                    BEGIN
                        EXECUTE format(
                            'CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                            v_name, v_table,
                            v_month::timestamp AT TIME ZONE 'UTC',
                            (v_month + interval '1 month')::timestamp AT TIME ZONE 'UTC');
                        v_made := v_made + 1;
                    EXCEPTION WHEN check_violation THEN
                        RAISE WARNING 'partition % left to the default partition: %',
                            v_name, SQLERRM;
                    END;
                END IF;
            END IF;
        END LOOP;
        v_month := (v_month + interval '1 month')::date;
    END LOOP;
    RETURN v_made;
END
$$;
