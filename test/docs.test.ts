import { readFile } from 'node:fs/promises'
import t from 'tap'
import { describeConfig } from '../src/config.js'

const read = (file: string) => readFile(new URL(`../${file}`, import.meta.url), 'utf8')

t.test('.env.example and the README list every configuration variable', async (t) => {
  const example = await read('.env.example')
  const readme = await read('README.md')
  for (const { name } of describeConfig()) {
    t.match(example, new RegExp(`^#? ?${name}=`, 'm'), `${name} is in .env.example`)
    t.match(readme, new RegExp(`^\\| \`${name}\` +\\|`, 'm'), `${name} is in the README configuration table`)
  }
})
