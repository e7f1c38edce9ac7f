// Sample tables of awkward types for the tests, and an independent way to compare two tables.
import type { PostgresServer } from '../../src/infra/postgres';

export const AWKWARD_COLUMNS = `
  id          bigint PRIMARY KEY,
  ref         uuid NOT NULL,
  amount      numeric(20,6),
  ratio       double precision,
  flag        boolean,
  doc         jsonb,
  label       text,
  happened_at timestamptz,
  day         date`;

/** NULLs everywhere they are allowed, '' and NULL text, unicode, quotes, backslashes, microseconds. */
export const AWKWARD_FILL = (table: string) => `
INSERT INTO ${table}
SELECT g,
       md5('r' || g)::uuid,
       CASE WHEN g % 17 = 0 THEN NULL ELSE (g * 1.000001)::numeric(20,6) END,
       CASE WHEN g % 19 = 0 THEN NULL WHEN g % 5 = 0 THEN 1e-300 * g ELSE g / 3.0 + 0.1 END,
       CASE g % 3 WHEN 0 THEN true WHEN 1 THEN false END,
       CASE WHEN g % 23 = 0 THEN NULL ELSE jsonb_build_object('n', g, 's', 'ü"\\' || g, 'a', jsonb_build_array(1.5, null, 'x')) END,
       CASE g % 7 WHEN 0 THEN NULL WHEN 1 THEN '' WHEN 2 THEN 'naïve – ☃ "double" ''single'' \\back' ELSE 'label ' || g END,
       CASE WHEN g % 29 = 0 THEN NULL ELSE timestamptz '2001-02-03 04:05:06.123456+00' + g * interval '1.000001 second' END,
       date '2020-01-01' + (g % 1000)::int
  FROM generate_series($1::bigint, $2::bigint) AS g`;

/** md5 of every row's text, summed: independent of the product's own hashtextextended checksum. */
export async function fingerprint(pg: PostgresServer, db: string, table: string): Promise<{ count: string; hash: string }> {
  const r = await pg.query(
    db,
    `SELECT count(*)::text AS count, coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)::bigint), 0)::text AS hash FROM ${table} t`,
  );
  return { count: r.rows[0].count, hash: r.rows[0].hash };
}
