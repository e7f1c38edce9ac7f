// The search attributes a migration keeps current, so the UI's list can filter by them. Defined
// once: the workflow upserts them, the CLI sets them at start, the dev server and the worker
// register them.
import { SearchAttributeType, defineSearchAttributeKey } from '@temporalio/common';

export const SEARCH_ATTRIBUTES = { migration: 'BackfillMigration', phase: 'BackfillPhase', attention: 'BackfillAttention' } as const;

export const migrationKey = defineSearchAttributeKey(SEARCH_ATTRIBUTES.migration, SearchAttributeType.KEYWORD);
export const phaseKey = defineSearchAttributeKey(SEARCH_ATTRIBUTES.phase, SearchAttributeType.KEYWORD);
export const attentionKey = defineSearchAttributeKey(SEARCH_ATTRIBUTES.attention, SearchAttributeType.KEYWORD);

export const SEARCH_ATTRIBUTE_KEYS = [migrationKey, phaseKey, attentionKey];

/** Values of BackfillAttention: why a person should look (empty when nothing is wrong). */
export const ATTENTION = { approvalOverdue: 'approval-overdue' } as const;
