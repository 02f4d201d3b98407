#!/usr/bin/env node
import { main } from '../dist/src/cli/retrain.js';

await main();
