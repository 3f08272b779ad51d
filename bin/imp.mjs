#!/usr/bin/env node
// Imp's TypeScript runs directly on Node 24+ (type stripping); the project brings Node 26
// as an npm dependency, so `npm exec imp` and the npm scripts use it.
const [major] = process.versions.node.split('.').map(Number);
if (major < 24) {
  console.error(
    `imp needs Node 24 or newer (this is ${process.versions.node}); run it through npm ` +
      '(npm start, npm exec imp) to use the Node the project installs.',
  );
  process.exit(1);
}
await import('../src/cli/main.ts');
