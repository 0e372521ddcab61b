// ESLint flat config: typescript-eslint's strict, type-checked rules for the extension and its tests.
import eslint from '@eslint/js';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

export default defineConfig(
    { ignores: ['**/out/**', '**/node_modules/**'] },
    eslint.configs.recommended,
    tseslint.configs.strictTypeChecked,
    tseslint.configs.stylisticTypeChecked,
    {
        languageOptions: {
            parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
        },
        rules: {
            '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: false }],
        },
    },
    {
        // node:test's describe/it return promises that the runner itself awaits.
        files: ['**/*.test.ts'],
        rules: {
            '@typescript-eslint/no-floating-promises': [
                'error',
                {
                    allowForKnownSafeCalls: [
                        { from: 'package', package: 'node:test', name: ['describe', 'it', 'before', 'after', 'beforeEach'] },
                    ],
                },
            ],
        },
    },
    { files: ['**/*.mjs'], extends: [tseslint.configs.disableTypeChecked] },
);
