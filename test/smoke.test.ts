import t from 'tap'
import { loadConfig } from '../src/config.js'
t.test('x', async (t) => { t.equal(loadConfig({}).PORT, 3000) })
