// Which spec table a relation of the stream is: a Relation message is bound to its table once, and
// each change is routed by its relid to that binding, skipped (a relation known to be outside the
// spec), or refused (a change that would otherwise be dropped silently).
import { quoteIdent } from '../db/sql';
import type { RelationScope } from './apply-types';
import { CaptureError } from './errors';
import type { RelationMessage } from './pgoutput';
import { publishedTablesSql, viaRootSql } from './sql';
import { bindRelation, readableName, sourceLabel, type BoundRelation, type CaptureTable } from './tables';

export class Relations {
  private readonly byName = new Map<string, CaptureTable>();
  private readonly partitions = new Map<string, number>();
  private readonly outside = new Set<string>();
  /**
   * relid → its binding; null: known to be outside the spec (its changes are skipped); an error:
   * thrown at its first change. (Via the root, pgoutput describes a partition too, right after the
   * root, though its changes come under the root's relid: only a change decides.)
   */
  private readonly relations = new Map<number, BoundRelation | null | CaptureError>();

  constructor(
    private readonly tables: CaptureTable[],
    private readonly scope: RelationScope,
  ) {
    for (const t of tables) this.byName.set(`${t.sourceSchema}\0${t.sourceName}`, t);
    for (const p of scope.partitions) this.partitions.set(`${p.schema}\0${p.name}`, p.table);
    for (const r of scope.outside) this.outside.add(`${r.schema}\0${r.name}`);
  }

  /** A Relation message: what its changes will be applied to, from now on. */
  describe(m: RelationMessage): void {
    this.relations.set(m.relid, this.bind(m));
  }

  /** A change's relation: its binding, or null (skipped); throws why its changes stop the migration. */
  of(relid: number): BoundRelation | null {
    const r = this.relations.get(relid);
    if (r === undefined) throw new CaptureError(`the replication stream sent a change for relation ${relid} before describing it`, 'XX001');
    if (r instanceof CaptureError) throw r;
    return r;
  }

  /** A spec table's binding; null for a relation known to be outside the spec; else why its changes stop the migration. */
  private bind(m: RelationMessage): BoundRelation | null | CaptureError {
    const name = `${m.schema}\0${m.name}`;
    const table = this.byName.get(name);
    if (table) return bindRelation(m, table);
    if (this.outside.has(name)) return null;
    const { publication, managed } = this.scope;
    const rel = readableName(`${quoteIdent(m.schema)}.${quoteIdent(m.name)}`);
    const pub = readableName(quoteIdent(publication));
    const index = this.partitions.get(name);
    const of = index === undefined ? undefined : this.tables.find((t) => t.index === index);
    if (of)
      return new CaptureError(
        `the source's stream sends the changes of ${rel}, a partition of ${sourceLabel(of)}, under the partition's own name (the publication ${pub} has publish_via_partition_root off), so they would not reach the target: ` +
          `${viaRootSql(pub)}, then abort and start the migration again with a new name`,
        '0A000',
      );
    if (managed)
      // Added to the user's publication after this call read it: retried, the next call knows it.
      return new CaptureError(
        `the source's stream sends the changes of ${rel}, which the publication ${pub} did not publish when this call began; reading the stream again`,
        '55000',
      );
    return new CaptureError(
      `the source's stream sends the changes of ${rel}, which is not a table of this migration, though the publication ${pub} is the migration's own (only its tables): ` +
        `stopped rather than leave its changes out; abort, check the publication (${publishedTablesSql(publication)}), then start the migration again with a new name`,
      '0A000',
    );
  }
}
