// Where things are in the Temporal Web UI (2.x, as the dev server serves it), for test/ui.test.ts and
// scripts/screenshots.ts. Found by exploring UI 2.42.1: test ids and accessible names, not layout.
import type { FrameLocator, Locator, Page } from 'playwright-core';

/** Some elements exist twice (a desktop and a mobile layout); the visible one is the operator's. */
export const visible = (l: Locator): Locator => l.filter({ visible: true });

/** The workflow list's row of one workflow. */
export const listRow = (page: Page, workflowId: string): Locator =>
  page.getByTestId('workflows-summary-configurable-table-row').filter({ hasText: workflowId });

/**
 * Waits for what the list shows, reloading it: the list does not refresh by itself, and the server's
 * visibility store may take a moment after a workflow closes.
 */
export async function seenInList(page: Page, l: Locator, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await l.waitFor({ timeout: 2_000 });
    } catch (e) {
      if (Date.now() > end) throw e;
      await page.reload();
    }
  }
}

/** The list's gear: add custom search attribute columns, remove default ones (the browser keeps the choice). */
export async function configureListColumns(page: Page, o: { add?: string[]; remove?: string[] }): Promise<void> {
  await page.getByTestId('workflows-summary-table-configuration-button').click();
  for (const c of o.add ?? []) await page.getByRole('button', { name: `Add ${c} column` }).click();
  for (const c of o.remove ?? []) await page.getByRole('button', { name: `Remove ${c} column` }).click();
  await page.getByRole('button', { name: 'Close Workflows Table configuration' }).click();
  await page.getByText('Configure Workflows Table').waitFor({ state: 'hidden' });
}

/**
 * The Markdown the User Metadata tab renders under a heading (`Summary`, `Details`, `Current
 * Details`): each is its own iframe (`/render?content=…`).
 */
export const markdownUnder = (page: Page, heading: 'Summary' | 'Details' | 'Current Details'): FrameLocator =>
  page.locator(`xpath=//h3[normalize-space()="${heading}"]/ancestor::div[.//iframe][1]//iframe`).first().contentFrame();

/** More Actions → Send an Update, pick `name` (its description must show), type `data`; the open dialog. */
export async function fillUpdate(page: Page, name: string, description: RegExp, data: object): Promise<Locator> {
  await page.getByRole('button', { name: 'More Actions' }).click();
  await visible(page.getByTestId('update-button')).click();
  const dialog = visible(page.getByTestId('update-confirmation-modal'));
  await dialog.getByTestId('update-select-button').click();
  await dialog.getByRole('option', { name: new RegExp(`${name}.*${description.source}`) }).click();
  const editor = dialog.locator('[contenteditable=true][role=textbox]');
  await editor.click();
  await page.keyboard.insertText(JSON.stringify(data));
  // The editor reformats its JSON when it loses focus, which would move Submit away from a click.
  await editor.evaluate((e) => (e as unknown as { blur(): void }).blur());
  return dialog;
}
