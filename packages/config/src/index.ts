export {
  type Config,
  type ConfigChange,
  type ConfigChangeEvent,
  type ConfigOptions,
  type ConfigStatus,
  createConfig,
  MASK,
} from './config.js';
export { CLI_VALUE_MAX_CHARS, type CliIo, runConfigCli } from './config-cli.js';
export { type ContextLayout, configContexts, watchPrefixes } from './config-contexts.js';
export {
  ConfigDecryptError,
  type ConfigDocumentBound,
  ConfigKeyError,
  ConfigParseError,
  ConfigSourceError,
  ConfigTooLargeError,
  ConfigValueError,
} from './config-errors.js';
export { CONFIG_DOCUMENT_LIMITS, type ConfigFormat } from './config-format.js';
export { envName } from './env-source.js';
export { parseProperties } from './properties-format.js';
export {
  decryptValue,
  type EncryptionKey,
  encryptValue,
  generateKey,
  isEncrypted,
  KEY_ENV,
  KEY_FILE_ENV,
  KEY_FILE_MAX_BYTES,
  keysFromEnvironment,
  keysFromFile,
  parseKey,
  propertyBinding,
  UndecryptableValue,
} from './value-cipher.js';
export { parseYaml } from './yaml-format.js';
