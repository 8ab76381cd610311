import { writeFile } from 'node:fs/promises'
import { generateOpenApi } from '../src/openapi.js'

// `npm run openapi`: regenerates openapi.yaml from the route schemas.
await writeFile(new URL('../openapi.yaml', import.meta.url), await generateOpenApi())
process.stdout.write('openapi.yaml written\n')
