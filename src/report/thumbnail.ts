import sharp from 'sharp';
import { readImageFile } from '../image/index.js';

/** Thumbnail edge in CSS pixels. */
export const THUMB = 112;

/** A small upright JPEG of the image as a data URI; null when it cannot be read (size and header checked first). */
export async function thumbnail(file: string): Promise<string | null> {
  try {
    const jpg = await sharp(await readImageFile(file)).rotate().resize(THUMB, THUMB, { fit: 'inside' }).jpeg({ quality: 70 }).toBuffer();
    return `data:image/jpeg;base64,${jpg.toString('base64')}`;
  } catch {
    return null;
  }
}
