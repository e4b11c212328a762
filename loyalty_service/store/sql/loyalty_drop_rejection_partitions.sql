-- Retention: drops the rejection partitions wholly before p_cutoff; the rows dropped.
-- Dropping a partition locks the parent table; a drop that cannot have its lock within a
-- second (a long query on rejections) is left for the next round rather than queueing every
-- rejection behind it.
CREATE OR REPLACE FUNCTION loyalty_drop_rejection_partitions(p_cutoff timestamptz)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_name  text;
    v_rows  bigint;
    v_total bigint := 0;
BEGIN
    PERFORM set_config('lock_timeout', '1s', true);
    FOR v_name IN
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'rejections'::regclass AND c.relname ~ '^rejections_\d{4}_\d{2}$'
           AND (to_date(substr(c.relname, 12), 'YYYY_MM') + interval '1 month')
               <= p_cutoff AT TIME ZONE 'UTC'
         ORDER BY c.relname
    LOOP
        BEGIN
            EXECUTE format('SELECT count(*) FROM %I', v_name) INTO v_rows;
            EXECUTE format('DROP TABLE %I', v_name);
            v_total := v_total + v_rows;
        EXCEPTION WHEN lock_not_available THEN
            RAISE WARNING 'partition % not dropped this round: %', v_name, SQLERRM;
        END;
    END LOOP;
    RETURN v_total;
END
$$;
