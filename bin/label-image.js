#!/usr/bin/env node
import { main } from '../dist/src/cli/label_image.js';

await main();
