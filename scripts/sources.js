#!/usr/bin/env node
// Prints one group of scripts/sources.json for binding.gyp's command expansion:
//   node scripts/sources.js <group>          -> the group's files, one per line
//   node scripts/sources.js --flags <group>  -> the common flags followed by the group's flags
'use strict';
const path = require('path');
const list = require(path.join(__dirname, 'sources.json'));

const args = process.argv.slice(2);
if (args[0] === '--flags') {
  const group = args[1];
  if (!(group in list.flags)) {
    console.error(`sources.js: unknown flag group '${group}'`);
    process.exit(2);
  }
  process.stdout.write([...list.flags.common, ...list.flags[group]].join('\n') + '\n');
} else {
  const group = args[0];
  if (!Array.isArray(list[group])) {
    console.error(`sources.js: unknown source group '${group}'`);
    process.exit(2);
  }
  process.stdout.write(list[group].join('\n') + '\n');
}
