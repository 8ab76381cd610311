import { randomBytes } from 'node:crypto'
import t from 'tap'
import { checkPassword, normalizePassword } from '../../src/domain/password-policy.js'

const email = 'alice.smith@example.com'
const messages = (password: string, address = email) => checkPassword(password, address).map((e) => e.message)

t.test('a strong passphrase passes', async (t) => {
  t.same(checkPassword('glacier umbrella fossil lantern', email), [])
  t.same(checkPassword('correct horse battery staple', email), [])
})

t.test('length is counted in code points after NFKC', async (t) => {
  const emoji = ['🦊', '🌵', '🎻', '🚲', '🍋', '🧭', '🪐', '🐙', '🎲', '🧊', '🪁', '🦉']
  // 11 emoji are 22 UTF-16 units: a .length check would wrongly accept them.
  const eleven = emoji.slice(0, 11).join('')
  t.equal(eleven.length, 22)
  t.same(messages(eleven), ['must be at least 12 characters'])
  t.same(checkPassword(emoji.join(''), email), [], '12 distinct emoji are long and strong enough')
  t.same(messages('Xk7#qP2!vL9'), ['must be at least 12 characters'])
})

t.test('too long is refused', async (t) => {
  const random = randomBytes(200).toString('base64')
  t.same(checkPassword(random.slice(0, 256), email), [], '256 characters is the limit')
  t.same(messages(random.slice(0, 257)), ['must be at most 256 characters'])
  t.same(messages('🦊'.repeat(257)), ['must be at most 256 characters'])
})

t.test('common or guessable passwords are refused', async (t) => {
  const weak = checkPassword('password1234', email)
  t.equal(weak[0]?.path, '/password')
  t.equal(weak[0]?.message, 'is too common or easy to guess')
  t.ok(weak.length >= 1)
  t.same(messages('aaaaaaaaaaaa').slice(0, 1), ['is too common or easy to guess'])
  t.same(messages('qwertyuiopasdf').slice(0, 1), ['is too common or easy to guess'])
  const warned = checkPassword('aaaaaaaaaaaa', email)
  t.equal(warned.length, 2, "zxcvbn's warning is passed on")
})

t.test('passwords built from the email address are refused', async (t) => {
  t.same(messages('Alice.Smith-rocks-2024!'), ['must not contain your email address'], 'case-insensitive')
  t.same(messages('alice.smith@example.com'), ['must not contain your email address'])
  t.same(messages('ALICE.SMITH@EXAMPLE.COM'), ['must not contain your email address'])
  t.same(
    messages('my bob+news vacation photos', 'bob+news@example.com'),
    ['must not contain your email address'],
    'the whole local part',
  )
  t.same(
    messages('bob went fishing on tuesday', 'bob+news@example.com'),
    ['must not contain your email address'],
    'the part before a plus tag',
  )
  // A two-letter local part is too short to be a meaningful match.
  t.same(checkPassword('glacier umbrella fossil lantern', 'gl@example.com'), [])
})

t.test('email parts count as known words for the strength estimate', async (t) => {
  // Strong on its own, weak once the attacker knows the address's domain.
  t.same(checkPassword('Zqvbrtnmx!2024', 'j@other.org'), [])
  t.same(messages('Zqvbrtnmx!2024', 'j@zqvbrtnmx.io').slice(0, 1), ['is too common or easy to guess'])
})

t.test('every error names the password field', async (t) => {
  for (const error of checkPassword('short', email)) t.equal(error.path, '/password')
})

t.test('NFKC: fullwidth and ASCII forms are the same password', async (t) => {
  const fullwidth = 'ｇｌａｃｉｅｒ　ｕｍｂｒｅｌｌａ　ｆｏｓｓｉｌ'
  t.equal(normalizePassword(fullwidth), 'glacier umbrella fossil')
  t.same(checkPassword(fullwidth, email), checkPassword('glacier umbrella fossil', email))
  t.equal(normalizePassword('ﬁﬁﬁ'), 'fififi', 'ligatures decompose')
  t.equal(normalizePassword('  Mixed Case  '), '  Mixed Case  ', 'never trimmed or case-folded')
  t.same(messages('ｐａｓｓｗｏｒｄ１２３４'), messages('password1234'))
})
