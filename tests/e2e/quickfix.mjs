// Drives a running code-server in headless Chromium: opens a file, puts the cursor on a line,
// opens the quick-fix menu (Ctrl+.) until trustfix's actions are listed, saves a screenshot,
// applies the first trustfix action and saves the file.  Prints one JSON line:
// {"titles": [...], "applied": "<title>"}.
//
// Usage: node quickfix.mjs URL FILE_NAME LINE SCREENSHOT [TIMEOUT_S]
import puppeteer from 'puppeteer-core';

const [url, fileName, line, screenshot, timeoutArg] = process.argv.slice(2);
const timeoutMs = Number(timeoutArg ?? '180') * 1000;
const deadline = Date.now() + timeoutMs;
const chromium = process.env.CHROMIUM ?? '/usr/bin/chromium';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function trustfixRows(page) {
    return page.$$eval('.action-widget .monaco-list-row', (rows) =>
        rows.map((row) => row.textContent ?? '').filter((text) => text.includes('trustfix:')),
    );
}

const browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--window-size=1280,800'],
    defaultViewport: { width: 1280, height: 800 },
});
const page = await browser.newPage();
try {
    await page.goto(url, { waitUntil: 'domcontentloaded', timeout: timeoutMs });
    await page.waitForSelector('.monaco-workbench', { timeout: timeoutMs });
    await sleep(3000); // the workbench restores its layout

    // open the file from the Explorer (a click opens it in the editor)
    const explorerRow = '.explorer-folders-view .monaco-list-row';
    await page.waitForSelector(explorerRow, { visible: true, timeout: timeoutMs });
    let opened = false;
    while (!opened && Date.now() < deadline) {
        for (const row of await page.$$(explorerRow)) {
            if ((await row.evaluate((el) => el.textContent ?? '')).trim() === fileName) {
                await row.click();
                opened = true;
                break;
            }
        }
        await sleep(500);
    }
    await page.waitForSelector('.editor-instance .monaco-editor .view-lines', { visible: true, timeout: 60000 });
    await page.click('.editor-instance .monaco-editor .view-lines');
    await sleep(1000);

    await page.keyboard.down('Control');
    await page.keyboard.press('KeyG');
    await page.keyboard.up('Control');
    await page.waitForSelector('.quick-input-widget input', { visible: true, timeout: 30000 });
    await page.keyboard.type(`${line}:9`);
    await page.keyboard.press('Enter');
    await sleep(500);

    let titles = [];
    while (titles.length === 0) {
        if (Date.now() > deadline) {
            await page.screenshot({ path: screenshot });
            throw new Error('no trustfix actions in the quick-fix menu before the deadline');
        }
        await page.keyboard.down('Control');
        await page.keyboard.press('Period');
        await page.keyboard.up('Control');
        try {
            await page.waitForSelector('.action-widget .monaco-list-row', { visible: true, timeout: 10000 });
            titles = await trustfixRows(page);
        } catch {
            titles = [];
        }
        if (titles.length === 0) {
            await page.keyboard.press('Escape');
            await sleep(2000); // the server is still starting (its first ranking loads the policy)
        }
    }
    await sleep(500);
    await page.screenshot({ path: screenshot });

    const rows = await page.$$('.action-widget .monaco-list-row');
    let applied = '';
    for (const row of rows) {
        const text = await row.evaluate((el) => el.textContent ?? '');
        if (text.includes('trustfix:')) {
            applied = text;
            await row.hover();
            await row.click();
            break;
        }
    }
    await sleep(2000);
    await page.keyboard.down('Control');
    await page.keyboard.press('KeyS');
    await page.keyboard.up('Control');
    await sleep(2000);
    process.stdout.write(JSON.stringify({ titles, applied }) + '\n');
} catch (error) {
    await page.screenshot({ path: screenshot.replace(/\.png$/, '-failed.png') }).catch(() => undefined);
    throw error;
} finally {
    await browser.close();
}
